"""Prime-field arithmetic on numpy arrays, for Shamir secret sharing.

A *field* turns secrets into *storage* arrays (numpy arrays of fixed-width integers with exactly
the secret's shape) and does modular arithmetic on them, elementwise and vectorized.  Nothing
here is asynchronous or talks to the network.

Why the default field is the Mersenne prime ``2**127 - 1``
----------------------------------------------------------
Fixed-point multiplication doubles the number of fractional bits, so the protocol suite
truncates the product *probabilistically*: a shared value ``y < 2**k`` is masked by random
integers ``r_i < 2**(k + 40)`` contributed by up to 64 players, and ``y + sum(r_i)`` is revealed.
The statistical security parameter is **40 bits**: the revealed sum hides ``y`` up to a
statistical distance of about ``2**-40``.  The revealed sum must not wrap around the modulus,
and ``y + sum(r_i) < 2**k + 64 * 2**(k + 40) <= 2**(k + 47)`` (40 bits of masking plus
``log2(64) + 1 = 7`` bits of headroom), so the field must exceed ``2**(k + 40 + 7)``.  With
``k`` around 80 bits (fixed-point values with 16 fractional bits, doubled by a product, plus
room for sums) that is about ``2**127``, more than 64-bit integers hold.  Hence the default
field is ``p = 2**127 - 1``, which is prime and makes reduction cheap because
``2**127 == 1 (mod p)``.

Fields
------
`MersenneField` (the default) stores each element in two 64-bit limbs and computes with
vectorized limb kernels that never loop over elements.  `PrimeField` handles any prime below
``2**64`` with ``uint64`` storage (for tests, interop and small-field experiments); its
multiplication is slower when the order is ``>= 2**32``.  ``field(order)`` returns the field of
a given order.

Randomness
----------
`Field.uniform` without a generator is cryptographically secure (OpenSSL's CSPRNG, else
``os.urandom``), and rejection sampling avoids any modulo bias.  Passing a
``numpy.random.Generator`` makes the output reproducible, which is for tests only: numpy's
generators are not cryptographically secure.

Modules
-------
``_base``
    The `Field` interface and the storage helpers the fields share.
``_random``
    Random words: secure by default, from a numpy generator in tests.
``_mersenne``
    `MersenneField` and how its arithmetic works.
``_mersenne_kernels``
    The chunked limb kernels modulo ``2**127 - 1`` behind `MersenneField`.
``_prime``
    `PrimeField` and its primality check.
"""

from __future__ import annotations

from ._base import Field
from ._base import Storage as Storage
from ._mersenne import MERSENNE_127, MersenneField
from ._prime import PrimeField
from ._random import secure_words as secure_words

# Private names tests/test_arithmetic.py reads through the package.
from ._base import _CHUNK as _CHUNK  # isort: skip
from ._random import _random_words as _random_words  # isort: skip

__all__ = ["MERSENNE_127", "Field", "MersenneField", "PrimeField", "field"]


def field(order: int | None = None) -> Field:
    """Return the field of the given order: `MersenneField` for ``None`` or ``2**127 - 1``,
    otherwise ``PrimeField(order)`` (a prime below ``2**64``)."""
    if order is None or (not isinstance(order, bool) and order == MERSENNE_127):
        return MersenneField()
    return PrimeField(order)
