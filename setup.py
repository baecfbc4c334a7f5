import os

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
# ukrun-init (csrc/init.c) is a program, not a module: it is what stays as PID 1 of a
# container once ukrun is done (ukrun/kernel/process.py finds it). Linked dynamically: static glibc
# would add ~300 KB to the wheel for ~0.4 MB less VmRSS, yet more memory in use (PSS),
# since the dynamic one shares libc's pages with the program it runs.
INIT = "ukrun-init"
INIT_SOURCE = os.path.join("csrc", "init.c")
INIT_FLAGS = ["-Wall", "-Wextra", "-Werror", "-O2", "-std=gnu11"]


def read_version():
    scope = {}
    with open(os.path.join(HERE, "ukrun", "_version.py")) as f:
        exec(f.read(), scope)
    return scope["__version__"]


class build_ext_and_init(build_ext):
    """build_ext that also compiles ukrun-init, with the same compiler, into the package:
    into build_lib for a wheel, and next to the sources as well for an in-place build
    (``pip install -e .``, ``build_ext --inplace``), as setuptools does with the extension."""

    def run(self):
        super().run()
        built = self._built_init()
        self.mkpath(os.path.dirname(built))
        objects = self.compiler.compile([INIT_SOURCE], output_dir=self.build_temp,
                                        extra_postargs=INIT_FLAGS)
        # -s: Python's CFLAGS carry -g; the symbols would grow the file from 14 to 23 KB.
        self.compiler.link_executable(objects, INIT, output_dir=os.path.dirname(built),
                                      extra_postargs=["-s"])
        if self.inplace:
            self.copy_file(built, self._inplace_init(), level=self.verbose)

    def _built_init(self):
        return os.path.join(self.build_lib, "ukrun", INIT)

    def _inplace_init(self):
        build_py = self.get_finalized_command("build_py")
        return os.path.join(build_py.get_package_dir("ukrun"), INIT)

    def get_outputs(self):
        outputs = super().get_outputs()  # in place, that is get_output_mapping()'s keys
        return outputs if self._built_init() in outputs else outputs + [self._built_init()]

    def get_output_mapping(self):
        mapping = super().get_output_mapping()
        if self.inplace:
            mapping[self._built_init()] = self._inplace_init()
        return mapping


setup(
    name="ukrun",
    version=read_version(),
    description="Run a unikernel as a container's main process and hand it the container's network",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="ISC",
    packages=["ukrun", "ukrun.kernel", "ukrun.network", "ukrun.guest", "ukrun.guest.targets",
              "ukrun.guest.formats"],
    python_requires=">=3.9",
    # tests/test_valueclass.py runs under each of these (and reads this list).
    classifiers=[
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
    ],
    setup_requires=["cffi>=1.15"],
    install_requires=["cffi>=1.15"],
    cffi_modules=["ukrun/_build.py:ffi"],
    # cffi subclasses whatever build_ext it finds here, so both builds run.
    cmdclass={"build_ext": build_ext_and_init},
    # A script rather than a console_scripts entry point: its interpreter line skips site
    # where the installer keeps the flag, and it puts ukrun's directory back itself.
    scripts=["bin/ukrun"],
    # The CNI plugin: one executable for the CNI bin directory, named for its "type".
    entry_points={"console_scripts": ["ukrun-cni = ukrun.cni:main"]},
    data_files=[("share/man/man1", ["man/ukrun.1"])],
    zip_safe=False,
)
