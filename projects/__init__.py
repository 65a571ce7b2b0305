"""The ML projects of this template, one subpackage each, and `core`, the layer they share."""
