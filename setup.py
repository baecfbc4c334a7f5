import os

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    scope = {}
    with open(os.path.join(HERE, "ukrun", "_version.py")) as f:
        exec(f.read(), scope)
    return scope["__version__"]


setup(
    name="ukrun",
    version=read_version(),
    description="Run a unikernel as a container's main process and hand it the container's network",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="ISC",
    packages=["ukrun"],
    python_requires=">=3.9",
    setup_requires=["cffi>=1.15"],
    install_requires=["cffi>=1.15"],
    cffi_modules=["ukrun/_build.py:ffi"],
    entry_points={"console_scripts": ["ukrun=ukrun.cli:main"]},
    data_files=[("share/man/man1", ["man/ukrun.1"])],
    zip_safe=False,
)
