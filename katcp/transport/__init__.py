"""What the server and client transports share (layer 3): the receive buffer, the line
framer, the write batcher, and the shutdown of a socket whose loop is closed. The framer
and the batcher do no I/O of their own."""
