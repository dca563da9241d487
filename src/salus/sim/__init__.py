"""salus.sim"""
