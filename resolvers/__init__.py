"""Domain logic over MongoDB, one module per entity. No Strawberry imports here."""
