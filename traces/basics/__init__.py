"""Floor 0, the basics: where things are (torch's folder, the user's code, portable paths) and
saving bytes whole. Imports nothing else of the package.
"""
