"""salus.signals"""
