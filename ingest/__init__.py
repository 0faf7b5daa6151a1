"""The edge: answers pixel and click fetches from memory and forwards raw hits."""
