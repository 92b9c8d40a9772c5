"""Generation: backends behind one interface, models, and the sharded driver."""
