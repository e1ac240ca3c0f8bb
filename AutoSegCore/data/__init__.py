"""AutoSegCore.data"""
