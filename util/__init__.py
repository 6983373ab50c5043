"""Small pieces with no knowledge of methods, data sets or training: the bottom of the imports.

Entry points -> helper -> distiller_zoo -> dataset / models / crd / packd -> util.
"""
