"""Test-only stand-ins for modules that exist only inside the desktop Slicer (PythonQt, CTK, scripted-module
framework). They carry just enough for ``import AutoSegSearch`` to succeed (package name unique across Testing/); nothing here is used by the Logic."""
