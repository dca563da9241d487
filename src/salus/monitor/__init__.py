"""salus.monitor"""
