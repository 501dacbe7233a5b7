from .backbones import *  # noqa: F401,F403
from .decode_heads import *  # noqa: F401,F403
from .converter import (check_level_sizes, convert_to_dynopool,  # noqa: F401
                        converted_pools, get_conversion)
