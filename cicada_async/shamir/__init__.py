"""Shamir secret sharing protocol suites over a :class:`~cicada_async.communicator.Communicator`.

Shares are numpy arrays of field elements (:mod:`cicada_async.arithmetic`; by default the
Mersenne prime 2**127 - 1).  A secret is shared as the values at each member's index
(``indices``, default 1..n) of a random polynomial of degree ``threshold - 1`` whose constant
term is the encoded secret; any ``threshold`` shares determine it, fewer reveal nothing.
Share polynomials and masks come from the operating system's CSPRNG; ``seed`` is for
reproducible tests only.

Every communicating method is an *operation*: it takes its identity when called and
returns an awaitable, so operations may run concurrently (:mod:`cicada_async.operations`).
Elementwise ones (``reveal`` to everyone, ``field_multiply``, ``multiply``) and dot products
started together run as one *batch*: one flat computation, one frame per peer and round,
each operation still matched and failed on its own (:mod:`cicada_async.shamir._batch`).

Communication rounds: ``share``, ``reveal`` (to everyone or to a subset), ``reshare`` and
``field_uniform`` take one round each; ``field_multiply``/``field_dot`` one (degree reduction);
``multiply``/``dot``/``matvec`` with fixed-point values two (degree reduction with the
truncation masks riding along, then one reveal of a masked value).

Fixed-point truncation (after a product, to drop ``precision`` fractional bits) is
probabilistic, after Catrina and de Hoogh: players ``0 .. threshold-1`` each contribute a
random mask ``r_i < 2**(k + 40)`` (k = the bit bound of the values, ``field.bits - 48``) and
its top part ``floor(r_i / 2**precision)``; the masked value ``x + 2**(k-1) + sum(r_i)`` is
revealed.  Its statistical distance from uniform is at most 2**-40 as long as one contributor
is honest, so the **statistical security parameter is 40 bits**.  The result is the product
rounded to ``precision`` bits, off by at most ``threshold // 2 + 1`` units in the last place
(``2**-precision``) and unbiased on average for even thresholds.  Products must stay below
``2**(k - 2 - 2*precision)`` in magnitude (2**45 ≈ 3.5e13 for the default field and precision 16).
"""

from ._basic import ShamirBasicProtocolSuite
from ._protocol import COMPARISON_BOUND, STATISTICAL_SECURITY, ShamirProtocolSuite
from ._share import ShamirArrayShare

__all__ = ["COMPARISON_BOUND", "STATISTICAL_SECURITY", "ShamirArrayShare", "ShamirBasicProtocolSuite",
           "ShamirProtocolSuite"]
