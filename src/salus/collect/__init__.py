"""salus.collect"""
