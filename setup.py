"""Package layout (everything else is in pyproject.toml).

The repository keeps the user-facing configuration at the top level (``config/``); an
installed liqmon reads the same files as the package data ``monitor.config``
(``importlib.resources``), so ``liqmon`` works from any directory. pyproject.toml cannot
combine package discovery with this one mapping, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["monitor*", "feeds*", "alerts*"]),
        "monitor.config",
        "monitor.config.instruments",
        # the page's files: data directories, declared so setuptools ships them as such
        "monitor.api.static",
        "monitor.api.static.vendor",
    ],
    package_dir={"monitor.config": "config"},
)
