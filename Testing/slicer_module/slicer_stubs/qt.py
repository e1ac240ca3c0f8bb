"""Stand-in for PythonQt's ``qt`` module: import-time only, plus the table item the Widget's table fillers create
(the Widget is not run outside Slicer; its fillers are, against recording stand-in widgets)."""


class QTimer:  # the Widget creates one in setup(); setup() is not called in these tests
    pass


class QTableWidgetItem:
    def __init__(self, text=""):
        self.text = text
        self.toolTip = ""

    def setToolTip(self, text):
        self.toolTip = text
