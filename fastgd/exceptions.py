"""Exceptions raised by fastgd."""


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or parameter.

    The estimator keeps the parameters of its last finite epoch; ``epoch`` is the 1-based
    epoch (counted over the estimator's whole training) in which the divergence happened.
    """

    def __init__(self, message, epoch=None):
        super().__init__(message)
        self.epoch = epoch
