"""What an agent may touch: typed functions with a permission scope and a side-effect flag."""
