"""Only the compiled SigV4 check is declared here; everything else is in pyproject.toml.

``optional``: without a C compiler or OpenSSL's headers the install still succeeds, and
the same check runs in Python (moorage/api/aws/sigv4.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("moorage.api.aws._sigv4c", ["moorage/api/aws/_sigv4c.c"],
                             libraries=["crypto"], optional=True)])
