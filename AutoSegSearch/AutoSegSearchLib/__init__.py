"""Qt-free library of the AutoSegSearch Slicer module (logic, engine process, install, headless helpers)."""
