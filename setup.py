from setuptools import find_packages, setup

setup(
    name='mmseg_dynopool',
    version='0.1.0',
    description='DynOPool (learnable feature-map resizing) for MMSegmentation and MMPretrain',
    packages=find_packages(include=['mmseg_dynopool', 'mmseg_dynopool.*']),
    python_requires='>=3.9',
    install_requires=['torch', 'mmengine', 'mmcv', 'mmsegmentation'],
)
