"""Process-based producers and consumers (being written; lands with the transport)."""


class internalSubscriptionMessage:
    def __init__(self, type, value):
        self.type = type
        self.value = value


class ProcessSubscriptionConsumer:
    pass


class ProcessSubscriptionProducer:
    pass


class ProcessSubscriptionProducerConsumer:
    pass
