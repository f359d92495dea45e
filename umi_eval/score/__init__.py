"""umieval score / compare: the paper's metrics, R-L, prediction-file readers, scoring with
bootstrap intervals, tables."""
