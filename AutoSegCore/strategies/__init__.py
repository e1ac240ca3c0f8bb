"""AutoSegCore.strategies"""
