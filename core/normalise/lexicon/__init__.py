"""The normaliser's user dictionary, shipped as package data (read once per process).

* ``regions.txt``: GB/T 2260 division codes with their latest and former names, generated from
  python-stdnum by ``build_regions.py``;
* ``org_forms.txt``: organisation-form suffixes with the entity type they imply;
* ``industries.txt``: industry and line-of-business words of entity names.
"""
