"""Build the labextension against the JupyterLab installed in this Python.

`jupyter labextension build` would otherwise fetch JupyterLab's core metadata from the network;
the installed JupyterLab ships the same file (staging/package.json), which is also exactly the
set of shared packages the running JupyterLab offers.
"""

import os
import sys

import jupyterlab
from jupyter_builder.federated_extensions import build_labextension

if __name__ == "__main__":
    core = os.path.join(os.path.dirname(jupyterlab.__file__), "staging", "package.json")
    build_labextension(os.path.dirname(os.path.abspath(__file__)),
                       development="--development" in sys.argv[1:], core_package_file=core)
