"""AutoSegCore.search"""
