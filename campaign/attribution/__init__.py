"""Who owns a target: reverse DNS, RDAP, owners with contact chains, partner routing, cases."""
