"""AutoSegCore.spaces"""
