"""Image-text and image-label sources behind one batch contract.

Each source lives in its own subpackage or module and is imported where it is used, so that
``import clipforge.data`` stays cheap; ``clipforge.data.shapes`` is the procedurally generated
shapes world that demos and tests use when no real images are at hand.
"""
