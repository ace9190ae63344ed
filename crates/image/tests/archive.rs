//! Archive tests (save, load, import); filled in with those functions.
