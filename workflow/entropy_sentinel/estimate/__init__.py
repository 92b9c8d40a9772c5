"""Estimation: the p(correct) classifier, slice estimators and their intervals."""
