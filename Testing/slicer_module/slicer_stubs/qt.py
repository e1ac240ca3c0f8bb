"""Stand-in for PythonQt's ``qt`` module: import-time only (the Widget is not run outside Slicer)."""


class QTimer:  # the Widget creates one in setup(); setup() is not called in these tests
    pass


class QTableWidgetItem:
    def __init__(self, text=""):
        self.text = text
