"""Image files: safe loading and atomic saving of every format, EXIF, and layered XCF/ORA documents."""
