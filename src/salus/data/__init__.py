"""salus.data"""
