"""AutoSegCore.report"""
