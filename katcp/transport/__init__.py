"""What the server and client transports share (layer 3): the receive buffer, the line
framer and the write batcher. The framer and the batcher do no I/O of their own."""
