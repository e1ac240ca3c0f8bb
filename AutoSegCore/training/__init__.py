"""AutoSegCore.training"""
