"""Stand-in for ``slicer.ScriptedLoadableModule`` (not shipped in slicer-core): minimal base classes."""
import unittest

import slicer


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        parent.title = ""
        self.moduleName = type(self).__name__


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent

    def setup(self):
        raise RuntimeError("the Widget needs the desktop Slicer (Qt)")

    def resourcePath(self, filename):
        return filename


class ScriptedLoadableModuleLogic:
    _parameter_nodes: dict = {}

    def __init__(self, parent=None):
        self.moduleName = type(self).__name__.replace("Logic", "")

    def getParameterNode(self):
        scene = slicer.mrmlScene
        node = self._parameter_nodes.get(id(scene))
        if node is None or node.GetScene() is not scene:
            node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", f"{self.moduleName}Parameters")
            node.SetAttribute("ModuleName", self.moduleName)
            self._parameter_nodes[id(scene)] = node
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=0):
        print(message)
