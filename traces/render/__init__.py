"""Floor 4, the renderers and files: everything that reads a finished ``Trace`` and shows or
saves it (the terminal, JSON, Mermaid, SVG, the HTML page, the set of files).
"""
