"""AutoSegCore.networks"""
