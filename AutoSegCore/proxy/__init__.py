"""AutoSegCore.proxy"""
