//! Anonymous memory files (memfd): created, sized, and sealed so that their size is fixed.
