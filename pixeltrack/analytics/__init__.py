"""Reading the results: a campaign's report and A/B verdict, and the terminal tables `query` and `report` print."""
