# Operators read event times to the second (when did the breaker open, which came first), and a
# compact ISO form keeps list columns narrow. Used through FORMAT_MODULE_PATH for English.
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
