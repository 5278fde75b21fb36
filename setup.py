import os
import re

from setuptools import find_packages, setup

HERE = os.path.abspath(os.path.dirname(__file__))


def read_version():
    with open(os.path.join(HERE, "katcp", "version.py")) as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


with open(os.path.join(HERE, "README.md")) as f:
    LONG_DESCRIPTION = f.read()

setup(
    name="katcp",
    version=read_version(),
    description="KATCP (Karoo Array Telescope Communication Protocol) for Python 3 and tornado 6",
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    project_urls={
        "Protocol specification": "https://github.com/ska-sa/katcp-guidelines",
    },
    packages=find_packages(include=["katcp", "katcp.*"]),
    package_data={"katcp": ["py.typed"], "katcp.web": ["static/*"]},
    python_requires=">=3.9",
    install_requires=["tornado>=6"],
    extras_require={
        "test": [
            "pytest>=7",
            "pytest-timeout>=2",
            "ply>=3.11",
            "hypothesis>=6",
            # drives a headless Chromium in tests/test_web_browser.py (katcp-web)
            "selenium>=4.11",
            # the IPython and Jupyter recipes (tests/test_operator_python.py and
            # tests/test_notebook.py); pip picks versions that support the Python in use
            "ipython>=8",
            "ipykernel>=6",
            "jupyter_client>=7",
            # the client and server tests also run on uvloop (tests/test_uvloop_switch.py, CI)
            "uvloop>=0.17; sys_platform != 'win32'",
        ],
        # the `ipython` code blocks of docs/interactive.rst need IPython's Pygments lexer
        "doc": ["sphinx>=5", "ipython_pygments_lexers>=1"],
        # optional faster event loop for katcp's own loops: docs/uvloop.rst
        "uvloop": ["uvloop>=0.17", "tornado>=6.2"],
    },
    entry_points={
        "console_scripts": [
            "katcp-exampleserver = katcp.scripts.exampleserver:main",
            "katcp-cmd = katcp.scripts.cmd:main",
            "katcp-shell = katcp.scripts.shell:main",
            "katcp-web = katcp.scripts.web:main",
        ],
    },
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: Developers",
        "Intended Audience :: Science/Research",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Framework :: Tornado",
        "Topic :: Scientific/Engineering :: Astronomy",
        "Topic :: System :: Networking",
    ],
    zip_safe=False,
)
