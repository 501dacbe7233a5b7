import os

from setuptools import find_packages, setup


def extensions():
    """The fused CPU kernel of DynOPool (optional: the package falls back to native ops).

    Set DYNOPOOL_NO_EXT=1 to skip it.
    """
    if os.environ.get('DYNOPOOL_NO_EXT') == '1':
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:  # torch not importable at build time: pure-Python install
        return [], {}
    ext = CppExtension('mmseg_dynopool._C', ['mmseg_dynopool/ops/cpu/dynopool_cpu.cpp'],
                       extra_compile_args=['-O3', '-std=c++20'])
    return [ext], {'build_ext': BuildExtension}


ext_modules, cmdclass = extensions()

setup(
    name='mmseg_dynopool',
    version='0.1.0',
    description='DynOPool (learnable feature-map resizing) for MMSegmentation and MMPretrain',
    packages=find_packages(include=['mmseg_dynopool', 'mmseg_dynopool.*']),
    package_data={'mmseg_dynopool': ['ops/cpu/*.cpp']},
    python_requires='>=3.9',
    install_requires=['torch', 'mmengine', 'mmcv', 'mmsegmentation'],
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
