"""SaladCloud Job Queues: the container side (`job`: Cog's answers mapped onto the queue worker's
contract) and the caller side (`saladcog queue`: submit, follow, collect)."""
