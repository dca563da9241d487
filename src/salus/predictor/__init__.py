"""salus.predictor"""
