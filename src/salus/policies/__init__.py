"""salus.policies"""
