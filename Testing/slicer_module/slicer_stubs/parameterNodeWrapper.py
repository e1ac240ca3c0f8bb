"""Stand-in for ``slicer.parameterNodeWrapper`` (desktop only): the decorated class wraps a parameter node and
exposes the annotated defaults as plain attributes (no GUI binding, no persistence)."""


def parameterNodeWrapper(cls):
    def __init__(self, parameterNode):
        self.parameterNode = parameterNode
        for name in getattr(cls, "__annotations__", {}):
            setattr(self, name, getattr(cls, name, None))

    cls.__init__ = __init__
    return cls
