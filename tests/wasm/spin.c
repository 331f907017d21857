/*
 * spin: never returns, so the tests can check that a job is stopped by its time limit
 * (and that stopping it leaves no output and marks the job failed). The counter is
 * volatile: a loop without side effects may be assumed to terminate and removed.
 */
int main(void)
{
  volatile unsigned long counter = 0;
  for (;;)
    counter++;
}
