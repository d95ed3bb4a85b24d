"""elasticsearch-py 7.13 predates NumPy 2: its serializer names `np.float_`
(removed in NumPy 2.0) when NumPy is importable, and the venv has NumPy 2
for the model tools. Restore the alias before the client is imported; it
changes nothing the proxy sees (it only teaches the client's JSON encoder
one more NumPy type)."""
import numpy

if not hasattr(numpy, "float_"):
    numpy.float_ = numpy.float64
