"""oom-harness: provoke genuine Linux OOM kills and check the victim against a model of the kernel.

The core modules (``logformat``, ``parser``, ``eras``, ``model``, ``analysis``, ``scenario``,
``engine``, ``sandbox``) use only the standard library, because the same code runs inside the QEMU
guest, whose Python comes from Debian packages.  Host-only conveniences (psutil, pandas,
matplotlib, docker) are imported lazily where they are used.
"""

__version__ = "0.1.0"
